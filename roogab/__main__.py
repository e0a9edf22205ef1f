"""``python -m roogab`` runs the ``roogab`` command."""

from .cli import main

main()
