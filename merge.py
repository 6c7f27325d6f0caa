"""`python merge.py ...`: the seed's entry point; see camel_chat/data_preprocessing/merge.py."""

import sys

from camel_chat.data_preprocessing.merge import main

if __name__ == "__main__":
    sys.exit(main())
