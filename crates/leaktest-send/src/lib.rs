//! The probe sender: route and neighbour lookup, AF_PACKET and raw IP sockets, sendmmsg batches and rate limiting.
