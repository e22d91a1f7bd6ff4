"""The syscall layer: every syscall and ioctl nsshell makes that Python's os module
lacks (syscalls, nsfs), and the one parser of each kernel text it reads (mountinfo,
idmap, procfs: stat, status, fdinfo); no policy, no printing.

Nothing here imports from the rest of nsshell.  Failures raise OSError with the
kernel's errno; callers above turn them into messages.
"""
