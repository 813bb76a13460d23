/* Foreign-ABI system calls, built by the test with the system compiler.
 * "x32": getpid through the x32 ABI (number | 0x40000000).
 * "int80": getpid through the i386 ABI (int 0x80, eax = 20).
 * Prints "OK <pid>" or "ERR <errno>"; a seccomp kill shows as SIGSYS. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long r;
    if (argc > 1 && strcmp(argv[1], "x32") == 0) {
        r = syscall(0x40000000 | SYS_getpid);
        if (r < 0) {
            printf("ERR %s\n", errno == EPERM ? "EPERM" : errno == ENOSYS ? "ENOSYS" : "other");
            return 0;
        }
    } else {
        __asm__ volatile("int $0x80" : "=a"(r) : "a"(20) : "memory");
        if (r < 0) {
            printf("ERR %ld\n", -r);
            return 0;
        }
    }
    printf("OK %ld\n", r);
    return 0;
}
