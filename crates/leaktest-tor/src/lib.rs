//! A small Tor control-port client: authentication, the relay allowlist from the consensus, NEWCONSENSUS events, and a journaled, reversible port restriction.
