"""Run a command and print its peak resident memory: ``python peak_rss.py CMD ARGS...``.

The last line of stdout is ``peak_rss_mb N`` (the child's maximum RSS, from getrusage).
"""

import resource
import subprocess
import sys

code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"peak_rss_mb {peak_kb / 1024:.1f}")
sys.exit(code)
