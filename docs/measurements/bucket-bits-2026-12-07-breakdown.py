"""The join phase's datagrams by kind with bucket_bits B (protocol join): lookup requests
(padded: the join's own lookup and refreshes), bare requests (address/validation probes, checks),
answers. usage: breakdown.py NODES B [NAME=VALUE ...]"""
import ast, collections, json, statistics, sys, time
from kadtalk.experiments import lookup as L
from kadtalk.node.routing import layer as RL
from kadtalk.node.routing.messages import RouteRequest

nodes, b = int(sys.argv[1]), int(sys.argv[2])
more = tuple((n, ast.literal_eval(v)) for n, v in (a.split("=", 1) for a in sys.argv[3:]))
counts = collections.Counter()
phase = ["join"]
send, serve = RL.RoutingLayer._send, None


def counted(self, msg, addr):
    if type(msg) is RouteRequest:
        counts[phase[0] + (" lookup requests" if msg.size > 41 else " bare requests")] += 1
    else:
        counts[phase[0] + " other"] += 1
    return send(self, msg, addr)


RL.RoutingLayer._send = counted
orig_append = None
converge = L.SimWorld.converge
marks = {}


def patched(self, *args, **kwargs):
    start = converge(self, *args, **kwargs)

    def record():
        marks["join_datagrams"] = self.network.sent
        marks["table_entries_mean"] = statistics.fmean(len(n.routing.table) for n in self.driver.nodes)
        phase[0] = "lookups"
    self.at(start - 1e-6, record)
    return start


L.SimWorld.converge = patched
study = L.LookupStudy(nodes=nodes, lookups=20, seed=1, bootstrap="protocol",
                      routing=(("bucket_bits", b),) + more)
summary = L.run_lookup_study(study).summary
join = {k: v for k, v in counts.items() if k.startswith("join")}
answers = marks["join_datagrams"] - sum(join.values())
print(json.dumps({"bucket_bits": b, "nodes": nodes, "more": dict(more)} | marks | join
                 | {"join answers (the rest)": answers, "cpu_s": round(time.process_time(), 1)}))
