import sys

from ruche.cli import main

sys.exit(main())
