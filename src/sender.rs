//! RTP sender: packetizes WAV audio as Asterisk would and sends it at real-time pace.
