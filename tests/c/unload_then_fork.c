/* The library's fork handlers (pthread_atfork, registered by the first
 * loop made) go when the library is unloaded: glibc's pthread_atfork
 * passes the handle of the library that calls it, and dlclose drops the
 * handlers registered under it. Otherwise the next fork() would call code
 * that is no longer mapped. argv[1]: a copy of libevloop.so, so that
 * dlclose can unload it (the copy this program links stays). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int mapped(const char *path) {
    char line[4096];
    FILE *maps = fopen("/proc/self/maps", "r");
    int found = 0;
    while (maps && fgets(line, sizeof line, maps)) found |= strstr(line, path) != NULL;
    if (maps) fclose(maps);
    return found;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 3;
    }
    typedef int (*loop_new)(void **);
    typedef int (*loop_free)(void *);
    loop_new new_loop;
    loop_free free_loop;
    *(void **)&new_loop = dlsym(lib, "evl_loop_new");
    *(void **)&free_loop = dlsym(lib, "evl_loop_free");
    void *loop = NULL;
    if (!new_loop || !free_loop || new_loop(&loop) != 0 || free_loop(loop) != 0) return 4;
    if (dlclose(lib) != 0) return 5;
    if (mapped(argv[1])) {
        fprintf(stderr, "the copy is still mapped: nothing tested\n");
        return 6;
    }
    fflush(NULL);
    pid_t pid = fork(); /* runs whatever handlers are still registered */
    if (pid < 0) return 7;
    if (pid == 0) _exit(0);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 8;
    printf("forked after unloading\n");
    return 0;
}
