"""RQ jobs: video processing, the progress publisher, retention. Must not import quart."""
