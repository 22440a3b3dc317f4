"""Training an identity from a preprocessed dataset (``fg3dgs train``)."""
