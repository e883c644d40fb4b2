"""``python -m forkpath._cli``: the same as the ``forkpath`` command."""

from forkpath._cli import main

main()
