"""``python -m pyanode`` runs the ``pyanode`` command."""

from pyanode.cli import main

if __name__ == "__main__":
    main()
