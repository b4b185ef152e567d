"""rnnext: vanilla recurrent neural networks with forward and BPTT in C++/Eigen."""

from . import losses, optim
from ._version import __version__
from .rnn import RNN
from .serialization import load

__all__ = ["RNN", "load", "losses", "optim", "__version__"]
