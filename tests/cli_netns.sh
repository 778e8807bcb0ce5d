#!/bin/sh
# cli_netns.sh - ranks on two "hosts": a network namespace made here, joined
# to this one by a veth pair on 10.x loopback-style addresses; mpirun starts
# the other host's daemon through a launcher agent that enters the
# namespace (plm_rsh_agent), ranks talk TCP only and read their inputs with
# MPI-IO from the shared file system.  The results are bitwise those of one
# rank; a host lost mid-run (its processes killed) ends the job with an
# error and leaves the earlier gradient set whole.
# Needs CAP_NET_ADMIN (ip netns); exits 77 (skipped, with the reason)
# without it.
. "$(dirname "$0")/cli-lib.sh"

ns=crl$$ a=crla$$ b=crlb$$
net=10.$(($$ % 200 + 20)).$(($$ / 200 % 250)).
if ! ip netns add "$ns" 2>"$WORK/ip.err"; then
    echo "SKIP: cannot create a network namespace ($(cat "$WORK/ip.err")): needs root with CAP_NET_ADMIN"
    exit 77
fi
cleanup() {
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip link del "$a" 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
ip link add "$a" type veth peer name "$b" && ip link set "$b" netns "$ns" \
    && ip addr add "${net}1/24" dev "$a" && ip link set "$a" up \
    && ip netns exec "$ns" ip addr add "${net}2/24" dev "$b" \
    && ip netns exec "$ns" ip link set "$b" up && ip netns exec "$ns" ip link set lo up || exit 99
cat >"$WORK/agent" <<AGENT
#!/bin/sh
# plm_rsh_agent [options] HOST COMMAND...: COMMAND on the namespace's "host".
while [ \$# -gt 0 ]; do case \$1 in -*) shift ;; *) break ;; esac; done
shift
exec ip netns exec $ns sh -c "\$*"
AGENT
chmod +x "$WORK/agent"
two_hosts() {
    np=$1
    shift
    timeout -k 10 "$TIMEOUT" "$MPIRUN" --mca plm_rsh_agent "$WORK/agent" --mca btl self,tcp \
        --mca btl_tcp_if_include "${net}0/24" --mca oob_tcp_if_include "${net}0/24" \
        --host "${net}1:4,${net}2:4" -np "$np" --map-by node "$@" </dev/null
}

cd "$WORK" || exit 99
mkdir f8 big && "$TOOL" gen f8 && "$TOOL" gen big --B 3000 --T 40 --N 40 || exit 99
# Every rank reports the namespace it runs in: both hosts take part.
two_hosts 4 sh -c 'ip -o -4 addr show | grep -c "'"$net"'"' >hosts 2>&1
[ "$(grep -c . hosts)" -eq 4 ] && pass || fail "ranks on two hosts: $(cat hosts)"
ARGS="--states f8/states.npy --states1 f8/states1.npy --w-hebb f8/w_hebb.npy --term h=hebbian
      --term k=population_kl --term f=fr:metric=l1 --json"
# shellcheck disable=SC2086
"$MPIRUN" -np 1 "$CLI" eval $ARGS --grad-dir one </dev/null >one.json 2>err || fail "1 rank: $(cat err)"
normalize one.json one.norm
for np in 2 4; do
    for k in "" "--chunk-batch 1"; do
        # shellcheck disable=SC2086
        two_hosts "$np" "$CLI" eval $ARGS $k --grad-dir "two-$np" >two.json 2>err
        rc=$?
        what="$np ranks on two hosts $k"
        [ $rc -eq 0 ] && pass || { fail "$what: exit $rc: $(head -5 err)"; continue; }
        normalize two.json two.norm
        same one.norm two.norm "$what: JSON"
        for g in one/d_*.npy; do
            same "$g" "two-$np/$(basename "$g")" "$what: $(basename "$g")"
        done
    done
done

# The other host lost mid-run: its processes die during the backward pass.
ARGS="--states big/states.npy --w-hebb big/w_hebb.npy --term h=hebbian"
# shellcheck disable=SC2086
"$MPIRUN" -np 1 "$CLI" eval $ARGS --grad-dir lost </dev/null >/dev/null 2>&1
cksum lost/d_states.npy lost/d_w_hebb.npy | sed 's| lost/.*||' >sumsA
# shellcheck disable=SC2086
two_hosts 4 "$CLI" eval $ARGS --term f=fr --chunk-batch 1 --progress always --grad-dir lost \
    >out 2>err &
pid=$!
i=0
while ! grep -q "chunk" err 2>/dev/null && [ $i -lt 1000 ]; do sleep 0.01; i=$((i + 1)); done
ip netns pids "$ns" | xargs -r kill -9
wait $pid
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && pass || fail "host lost: exit $rc (expected an error, no hang)"
[ -s err ] && pass || fail "host lost: no message"
cksum lost/d_states.npy lost/d_w_hebb.npy | sed 's| lost/.*||' >sumsX
same sumsA sumsX "host lost: the earlier gradient set is whole"
finish
