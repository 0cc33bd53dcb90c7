"""``python -m skinacc <command>``, and so ``accelerate launch ... -m skinacc <command>``."""

from skinacc.cli import main

if __name__ == "__main__":
    main()
