"""streamanon: remove identities from video."""
__version__ = "0.1.0"
