"""Cluster mode (issue 17): the sequenced log on NATS JetStream, a fenced sequencer
leader, replicas and a standby that takes over. docs/cluster.md says what is built and
what is not yet.

- ``log``: the log contract (``CommandLog``, ``LogBatch``, ``WrongLastSequence``) and
  ``FileLog`` over the embedded journal;
- ``jetstream``: ``JetStreamLog``, one stream per domain, one message per frame;
- ``lease``: the leader lease in a JetStream KV bucket;
- ``node``: ``Leader`` (the ``Sequencer`` with the JetStream append as before-hook) and
  ``Follower`` (replica / standby: applies frames, publishes state roots, takes over);
- ``servers``: a local nats-server cluster on loopback (tests, ``cluster up``);
- ``serve``: ``derivex serve --cluster`` (the gateway on a ``Leader``; standby, replica);
- ``up``: ``derivex cluster up`` (a local cluster and a leader + standby per domain,
  the relay and the router);
- ``router``, ``router_ws``, ``routing``, ``endpoints``: one HTTP / WebSocket API over
  all domains of a venue, following each domain's leader;
- ``forward``: a read replica's commands forwarded to its leader;
- ``inbox``, ``relay``, ``domains``: cross-domain transfers (the inbox authenticated).

Importing ``derivex.cluster`` needs only numpy and the core; the nats client is imported
by the modules that use it.
"""

from derivex.cluster.log import CommandLog, Fenced, FileLog, LogBatch, LogError, WrongLastSequence

__all__ = ["CommandLog", "Fenced", "FileLog", "LogBatch", "LogError", "WrongLastSequence"]
