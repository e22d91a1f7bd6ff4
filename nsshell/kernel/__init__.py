"""The syscall layer: thin ctypes wrappers and /proc parsers, no policy, no printing.

Nothing here imports from the rest of nsshell.  Failures raise OSError with the
kernel's errno; callers above turn them into messages.
"""
