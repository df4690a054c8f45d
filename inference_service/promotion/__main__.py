"""`python -m inference_service.promotion` - see cli.py."""

import sys

from inference_service.promotion.cli import main

sys.exit(main())
