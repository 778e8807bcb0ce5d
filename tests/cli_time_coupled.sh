#!/bin/sh
# cli_time_coupled.sh - cli_time.sh for hebbian and state_pred (tau within a
# unit and beyond one), whose sums couple the time steps of a block with its
# neighbours'.
CRL_TIME_TERMS=COUPLED
. "$(dirname "$0")/cli_time.sh"
