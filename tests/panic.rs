//! A panic inside the library is caught at the C boundary: the call returns
//! EVL_EPANIC and the process (this test) lives on.

use evloop::ffi::*;
use std::ptr;

#[test]
fn panic_becomes_evl_epanic_and_process_survives() {
    // SAFETY: the loop pointer comes from evl_loop_new and is used on this thread;
    // evl_strerror returns a static NUL-terminated string.
    unsafe {
        let mut lp = ptr::null_mut();
        assert_eq!(evl_loop_new(&mut lp), 0);
        arm_test_panic(lp);
        assert_eq!(evl_run_once(lp, 0), EVL_EPANIC);
        let text = std::ffi::CStr::from_ptr(evl_strerror(EVL_EPANIC))
            .to_str()
            .unwrap();
        assert!(text.contains("panic"), "{text}");
        // The hook fires once; the loop goes on working and frees cleanly.
        assert_eq!(evl_run_once(lp, 0), 0);
        arm_test_panic(lp);
        let mut events = [evl_event {
            fd: 0,
            revents: 0,
            userdata: ptr::null_mut(),
        }; 1];
        assert_eq!(evl_poll(lp, 0, events.as_mut_ptr(), 1), EVL_EPANIC);
        assert_eq!(evl_loop_free(lp), 0);
    }
}
