#!/bin/sh
# cli_tcp.sh - the command's multi-rank round trip and error agreement with
# Open MPI restricted to TCP between ranks (--mca btl self,tcp), as between
# hosts: the same bitwise results and the same messages as over shared
# memory.
dir=$(dirname "$0")
export OMPI_MCA_btl=self,tcp
status=0
for t in cli_roundtrip.sh cli_errors.sh; do
    echo "== $t over TCP"
    CRL_TEST_RANKS=${CRL_TEST_RANKS_TCP:-"2 3"} sh "$dir/$t" || status=1
done
exit $status
