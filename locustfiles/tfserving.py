"""The locustfile in the repository's layout; the installed one is ``tfsload locustfile``.

    locust -f locustfiles/tfserving.py --headless RestUser -H http://127.0.0.1:8501 -u 10 -t 30s

It declares exactly what :mod:`tfsload.locustfile` declares (tfsload must be installed, as
``make setup`` does).
"""

from tfsload.locustfile import *  # noqa: F403
from tfsload.locustfile import __all__  # noqa: F401
