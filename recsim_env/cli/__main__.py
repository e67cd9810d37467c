import sys

from recsim_env.cli import main

sys.exit(main())
