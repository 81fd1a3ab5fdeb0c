"""moto's server, one request at a time: python3 moto_serial.py HOST PORT

moto's own `moto_server` answers requests on many threads, and its backends hold no lock
per item, so two conditional writes of one DynamoDB item can both pass their condition
there, which DynamoDB never allows (wharf's upload compare-and-set relies on it). This runs
the same application as `moto_server`, without threads. werkzeug then speaks HTTP/1.0, so
an idle keep-alive connection cannot hold the server. Used by wharf_aws::testing::moto and
tests/e2e/aws_lib.sh.
"""
import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

run_simple(sys.argv[1], int(sys.argv[2]), DomainDispatcherApplication(create_backend_app), threaded=False)
