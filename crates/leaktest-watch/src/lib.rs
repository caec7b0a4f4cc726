//! The gateway side of leaktest: classification of outbound frames, the verdict, and the terminal, JSON, JUnit and pcapng reports.
