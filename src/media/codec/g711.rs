//! G.711 mu-law and A-law decoding through 256-entry tables.
