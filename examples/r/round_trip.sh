#!/bin/sh
# Export a case, compute the seed question's gradients on it in R, and check them with bncheck.
#
#   examples/r/round_trip.sh [WORK_FOLDER [verify-values options such as --json report.json]]
#
# Exits as verify-values does: 1 here, since the gradients as first posted are wrong. Set BNCHECK
# to run bncheck some other way (BNCHECK="python -m bncheck").
set -eu
here=$(dirname "$0")
work=${1:-$(mktemp -d)}
[ $# -gt 0 ] && shift
bncheck=${BNCHECK:-bncheck}

$bncheck case export --shape N=10,p1=7,p2=4 --seed 1 --activation relu --ddof 1 --eps 0 --format csv --out "$work/case"
Rscript "$here/seed_question.R" "$work/case" "$work/grads"
$bncheck verify-values "$work/case" "$work/grads" "$@"
