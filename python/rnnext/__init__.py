"""rnnext: vanilla recurrent neural networks with forward and BPTT in C++/Eigen."""

from . import losses, optim
from ._threads import get_num_threads, set_num_threads
from ._version import __version__
from .rnn import RNN
from .serialization import load

__all__ = ["RNN", "get_num_threads", "load", "losses", "optim", "set_num_threads", "__version__"]
