//! leaktest lab: an isolated Whonix-style lab in network namespaces, with a private Tor network, a real tor gateway, and broken gateway profiles.
