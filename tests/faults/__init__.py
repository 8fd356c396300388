"""Fault matrix — owned by engineer G."""
