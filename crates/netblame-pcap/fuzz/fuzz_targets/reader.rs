//! Any bytes as a capture file: an error or results, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(capture) =
        netblame_pcap::Capture::from_reader("fuzz", std::io::Cursor::new(data.to_vec()))
    {
        let _ = netblame_pcap::analyze(capture, netblame_pcap::Config::default());
    }
});
