import sys

from autoal.train import main

sys.exit(main())
