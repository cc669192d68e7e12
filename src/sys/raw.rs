//! The syscall instruction itself, for the calls an iteration makes every
//! time (the epoll wait, reads and writes, recvmmsg and sendmmsg).
//!
//! glibc's wrappers of these are cancellation points, which costs in a
//! process with threads, and `syscall(2)` (what this replaces) shuffles its
//! variadic arguments and goes through `errno`: about 10 instructions a call
//! in all, against 1 here. The kernel's answer comes back as it is: a count,
//! or a negated errno, which [`syscall`] turns into a `SysResult`. Where no
//! instruction is written out below (other architectures), `syscall(2)`.

use super::SysResult;

/// Makes syscall `nr` with `args` (unused ones 0).
///
/// # Safety
/// As the syscall itself: every pointer among `args` is valid for what the
/// kernel does with it, and the call takes or ends nothing the caller does
/// not own.
#[inline(always)]
pub unsafe fn syscall(nr: libc::c_long, args: [usize; 6]) -> SysResult<usize> {
    // SAFETY: the caller vouches for the arguments.
    let ret = unsafe { raw(nr, args) };
    // The kernel's errors are -4095 to -1; no count comes near.
    if ret < 0 {
        Err(-ret as i32)
    } else {
        Ok(ret as usize)
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn raw(nr: libc::c_long, args: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the x86-64 Linux syscall convention: number in rax, arguments in
    // rdi, rsi, rdx, r10, r8, r9, the result in rax; the instruction clobbers
    // rcx and r11 and nothing else (not the stack, not the flags as seen after
    // it returns). Memory may be read and written, as the asm! default says.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, preserves_flags),
        );
    }
    ret
}

#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn raw(nr: libc::c_long, args: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the AArch64 Linux syscall convention: number in x8, arguments in
    // x0 to x5, the result in x0; nothing else is clobbered.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") args[0] as isize => ret,
            in("x1") args[1],
            in("x2") args[2],
            in("x3") args[3],
            in("x4") args[4],
            in("x5") args[5],
            options(nostack, preserves_flags),
        );
    }
    ret
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline(always)]
unsafe fn raw(nr: libc::c_long, args: [usize; 6]) -> isize {
    let [a, b, c, d, e, f] = args;
    // SAFETY: the caller vouches for the arguments.
    let n = unsafe { libc::syscall(nr, a, b, c, d, e, f) } as isize;
    if n < 0 {
        -(super::errno() as isize)
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_errors_come_back_as_the_kernel_gives_them() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let [r, w] = fds;
        let out = b"abc";
        // SAFETY: plain writes and reads of buffers valid for their lengths.
        unsafe {
            let args = [w as usize, out.as_ptr() as usize, out.len(), 0, 0, 0];
            assert_eq!(syscall(libc::SYS_write, args), Ok(3));
            let mut back = [0u8; 8];
            let args = [r as usize, back.as_mut_ptr() as usize, back.len(), 0, 0, 0];
            assert_eq!(syscall(libc::SYS_read, args), Ok(3));
            assert_eq!(&back[..3], out);
            libc::close(r);
            libc::close(w);
            let args = [r as usize, back.as_mut_ptr() as usize, back.len(), 0, 0, 0];
            assert_eq!(syscall(libc::SYS_read, args), Err(libc::EBADF));
        }
    }
}
