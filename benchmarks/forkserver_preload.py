"""What the reliability harness's forkserver imports once, so each child starts in milliseconds.

The forkserver imports lancedb but never runs it, so nothing is mid-operation when it forks;
lancedb warns on every fork all the same, and that warning is silenced here, in that process.
"""

import warnings

warnings.filterwarnings("ignore", message="lancedb fork support is experimental")

import uvicorn  # noqa: E402,F401

import mostore.store  # noqa: E402,F401
import server.app  # noqa: E402,F401
