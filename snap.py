#!/usr/bin/env python3
"""snap: take one photo with a Raspberry Pi camera, store it in Redis, exit.

Run it from a systemd timer or cron for a photo every N seconds. Each shot is a
Redis hash PREFIX:<unix seconds> holding image_data, timestamp, mime_type and lux,
expiring after IMAGE_EXPIRY seconds. The code is the snapcam package beside this file.
Any python3 can run it: without snap's packages it runs itself with the .venv beside it.
"""

import gc
import sys

if __name__ == "__main__":
    # A run lasts a second or so: the collector's passes over all that the imports create
    # cost more time than the little cyclic garbage of one shot is worth.
    gc.disable()
    from snapcam.launch import ensure_dependencies

    ensure_dependencies()  # or hand over to the checkout's .venv, or exit 69
    from snapcam.cli import main
    from snapcam.ending import end

    end(main(sys.argv[1:]))  # without the interpreter's teardown: snapcam/ending.py
