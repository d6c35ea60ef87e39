"""snapcam: one photo from a Raspberry Pi camera into an expiring Redis hash, then exit.

snap.py is the command; this package is its code, one module per concern, each importing
only those listed before it:
  errors, masking, logs   exit codes, password masking, the lines snap prints
  shot                    the shot and the data contract's fields
  config                  the settings
  locks                   lock files and the per-camera lock
  spool, keeping, delivery  shots Redis did not take: on disk, added, delivered
  guard                   the watchdog, stop signals, the shot held until Redis has it
  camera                  picamera2
  store                   Redis and every key snap writes
  status, watch           each camera's status in Redis; --status
  run                     one shot, start to finish
  units, launch, cli      systemd timers, snap.py under any python3, the command line
  ending                  the process ended once main() has returned
"""

__version__ = "1.0.0"
