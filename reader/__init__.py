"""The extractive reader: the sentence of the retrieved passages that answers a question, and the
shortest span in it (`reader.read.read`; see that module for the call)."""

from reader.model import ReaderSettings, ReaderWeights, load_weights
from reader.read import Answer, read
from reader.sentences import Passage

__all__ = ["Answer", "Passage", "ReaderSettings", "ReaderWeights", "load_weights", "read"]
