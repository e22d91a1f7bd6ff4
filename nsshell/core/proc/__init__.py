"""Processes nsshell starts: the forked helper, identity and hardening, programs in the foreground, the batch runner."""
