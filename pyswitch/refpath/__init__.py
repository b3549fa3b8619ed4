"""The pure-Python twin of the C fast path, file for file (docs/DATAPATH.md is the contract)."""
from .actions import actions_apply
from .csum import csum, csum_update16, csum_update32
from .datapath import Datapath
from .flowtable import FlowTable
from .http import http_find_cookie, http_find_header, http_parse_request, tls_client_hello_sni
from .lpm import Lpm
from .offload import gso_plan, gso_segments, offload_csum, offload_rx_csum
from .parse import parse
from .splice import tcp_splice_check, tcp_splice_rewrite

__all__ = ["parse", "csum", "csum_update16", "csum_update32", "actions_apply", "offload_rx_csum", "offload_csum",
           "gso_plan", "gso_segments", "tcp_splice_check", "tcp_splice_rewrite", "FlowTable", "Lpm", "Datapath",
           "http_parse_request", "http_find_header", "http_find_cookie", "tls_client_hello_sni"]
