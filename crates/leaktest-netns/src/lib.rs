//! Network namespaces for leaktest's lab and tests: unique names, veth pairs made inside namespaces, processes tracked by PID, and guards that delete everything on drop.
