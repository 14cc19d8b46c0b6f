import sys

from llmfbn.cli import main

sys.exit(main())
