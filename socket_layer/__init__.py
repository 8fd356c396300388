"""Socket.IO layer: the server, connect auth, rooms, limits, resume, and the emitter."""
