"""The pre-call network test: an aiortc peer reached through the region's relay."""
