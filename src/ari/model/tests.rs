//! Tests of the ARI models against the JSON Asterisk 23.4.1 was seen sending (ASTERISK-NOTES.md).

use super::*;

/// The StasisStart example from ASTERISK-NOTES.md, "Seen on 23.4.1", verbatim.
const STASIS_START: &str = r#"{"type":"StasisStart","timestamp":"2026-11-22T08:03:11.049+0000","args":[],"channel":{"id":"1795334591.22","name":"UnicastRTP/127.0.0.1:40000-0x7f0b88007500","state":"Up","protocol_id":"","caller":{"name":"","number":""},"connected":{"name":"","number":""},"accountcode":"","dialplan":{"context":"default","exten":"s","priority":1,"app_name":"Stasis","app_data":"probe"},"creationtime":"2026-11-22T08:03:11.049+0000","language":"en"},"asterisk_id":"02:fc:00:00:00:01","application":"probe"}"#;

const CHANNEL: &str = r#"{"id":"1795334591.22","name":"UnicastRTP/127.0.0.1:40000-0x7f0b88007500","state":"Up","protocol_id":"","caller":{"name":"","number":""},"connected":{"name":"","number":""},"accountcode":"","dialplan":{"context":"default","exten":"s","priority":1,"app_name":"Stasis","app_data":"probe"},"creationtime":"2026-11-22T08:03:11.049+0000","language":"en"}"#;

/// An event of `kind` with the notes' channel, the common fields and `extra` fields.
fn event(kind: &str, extra: &str) -> String {
    format!(
        r#"{{{extra}"type":"{kind}","timestamp":"2026-11-22T08:03:12.000+0000","channel":{CHANNEL},"asterisk_id":"02:fc:00:00:00:01","application":"probe"}}"#
    )
}

#[test]
fn stasis_start_from_the_notes() {
    let m = Message::parse(STASIS_START).unwrap();
    assert_eq!(m.timestamp, "2026-11-22T08:03:11.049+0000");
    assert_eq!(m.application, "probe");
    assert_eq!(m.asterisk_id.as_deref(), Some("02:fc:00:00:00:01"));
    let Event::StasisStart {
        args,
        channel,
        replace_channel,
    } = &m.event
    else {
        panic!("not StasisStart: {:?}", m.event)
    };
    assert!(args.is_empty());
    assert!(replace_channel.is_none());
    assert_eq!(channel.id, "1795334591.22");
    assert_eq!(channel.name, "UnicastRTP/127.0.0.1:40000-0x7f0b88007500");
    assert_eq!(channel.state, ChannelState::Up);
    assert_eq!(channel.caller, CallerId::default());
    assert_eq!(channel.connected, CallerId::default());
    assert_eq!(channel.accountcode, "");
    assert_eq!(
        channel.dialplan,
        Some(DialplanCep {
            context: "default".into(),
            exten: "s".into(),
            priority: 1,
            app_name: "Stasis".into(),
            app_data: "probe".into(),
        })
    );
    assert_eq!(channel.creationtime, "2026-11-22T08:03:11.049+0000");
    assert_eq!(channel.language, "en");
    assert_eq!(channel.channelvars, None);
    assert_eq!(m.event.kind(), "StasisStart");
    assert_eq!(
        m.event.channel().map(|c| c.id.as_str()),
        Some("1795334591.22")
    );
}

#[test]
fn stasis_start_with_args_and_replace_channel() {
    let json = event(
        "StasisStart",
        &format!(r#""args":["snoop","in"],"replace_channel":{CHANNEL},"#),
    );
    let m: Message = json.parse().unwrap();
    let Event::StasisStart {
        args,
        replace_channel,
        ..
    } = m.event
    else {
        panic!("not StasisStart")
    };
    assert_eq!(args, ["snoop", "in"]);
    assert_eq!(replace_channel.unwrap().id, "1795334591.22");
}

#[test]
fn stasis_end_and_state_change() {
    let m = Message::parse(&event("StasisEnd", "")).unwrap();
    assert!(matches!(&m.event, Event::StasisEnd { channel } if channel.id == "1795334591.22"));
    let m = Message::parse(&event("ChannelStateChange", "")).unwrap();
    assert!(
        matches!(&m.event, Event::ChannelStateChange { channel } if channel.state == ChannelState::Up)
    );
}

#[test]
fn channel_destroyed_cause_16() {
    let json = event(
        "ChannelDestroyed",
        r#""cause":16,"cause_txt":"Normal Clearing","#,
    );
    let m = Message::parse(&json).unwrap();
    let Event::ChannelDestroyed {
        cause,
        cause_txt,
        channel,
    } = m.event
    else {
        panic!("not ChannelDestroyed")
    };
    assert_eq!(cause, 16);
    assert_eq!(cause_txt, "Normal Clearing");
    assert_eq!(channel.id, "1795334591.22");
}

#[test]
fn channel_hangup_request_with_soft() {
    // Field order as seen: cause and soft before type.
    let json = event("ChannelHangupRequest", r#""cause":32,"soft":true,"#);
    let m = Message::parse(&json).unwrap();
    assert_eq!(
        m.event,
        Event::ChannelHangupRequest {
            cause: Some(32),
            soft: Some(true),
            channel: serde_json::from_str(CHANNEL).unwrap(),
        }
    );
    // Both optional.
    let m = Message::parse(&event("ChannelHangupRequest", "")).unwrap();
    assert!(matches!(
        m.event,
        Event::ChannelHangupRequest {
            cause: None,
            soft: None,
            ..
        }
    ));
}

#[test]
fn dtmf_received() {
    let json = event("ChannelDtmfReceived", r##""digit":"#","duration_ms":120,"##);
    let m = Message::parse(&json).unwrap();
    let Event::ChannelDtmfReceived {
        digit, duration_ms, ..
    } = m.event
    else {
        panic!("not ChannelDtmfReceived")
    };
    assert_eq!(digit, "#");
    assert_eq!(duration_ms, 120);
}

#[test]
fn unknown_event_type_is_not_an_error() {
    let json = r#"{"type":"BridgeCreated","timestamp":"t","application":"probe","bridge":{"id":"b1","weird":[1,2]}}"#;
    let m = Message::parse(json).unwrap();
    assert_eq!(
        m.event,
        Event::Unknown {
            kind: "BridgeCreated".into()
        }
    );
    assert_eq!(m.application, "probe");
    assert_eq!(m.event.kind(), "BridgeCreated");
    assert!(m.event.channel().is_none());
    // A plain Message without timestamp/application (e.g. RESTResponse) and odd common fields.
    let m = Message::parse(r#"{"type":"RESTResponse","status_code":200,"application":7}"#).unwrap();
    assert_eq!(m.event.kind(), "RESTResponse");
    assert_eq!(m.timestamp, "");
}

#[test]
fn unknown_fields_are_ignored() {
    let channel = CHANNEL.replacen(
        r#""language":"en""#,
        r#""language":"en","tenantid":"t1","caller_rdnis":"","future":{"x":[null]}"#,
        1,
    );
    let json = format!(
        r#"{{"type":"StasisEnd","timestamp":"t","application":"a","channel":{channel},"new_top_level":123}}"#
    );
    let m = Message::parse(&json).unwrap();
    assert!(matches!(m.event, Event::StasisEnd { channel } if channel.language == "en"));
}

#[test]
fn new_channel_state_is_kept() {
    let json = CHANNEL.replace(r#""state":"Up""#, r#""state":"Teleporting""#);
    let ch: Channel = serde_json::from_str(&json).unwrap();
    assert_eq!(ch.state, ChannelState::Other("Teleporting".into()));
    assert_eq!(ch.state.to_string(), "Teleporting");
}

#[test]
fn every_known_channel_state_round_trips() {
    for (s, want) in [
        ("Down", ChannelState::Down),
        ("Rsrved", ChannelState::Rsrved),
        ("OffHook", ChannelState::OffHook),
        ("Dialing", ChannelState::Dialing),
        ("Ring", ChannelState::Ring),
        ("Ringing", ChannelState::Ringing),
        ("Up", ChannelState::Up),
        ("Busy", ChannelState::Busy),
        ("Dialing Offhook", ChannelState::DialingOffhook),
        ("Pre-ring", ChannelState::PreRing),
        ("Unknown", ChannelState::Unknown),
    ] {
        let got: ChannelState = serde_json::from_value(Value::String(s.into())).unwrap();
        assert_eq!(got, want);
        assert_eq!(serde_json::to_value(&got).unwrap(), Value::String(s.into()));
    }
}

#[test]
fn broken_json_is_a_json_error() {
    assert!(matches!(
        Message::parse(r#"{"type":"StasisStart""#),
        Err(ParseError::Json(_))
    ));
    assert!(matches!(
        Message::parse("[1,2]"),
        Err(ParseError::NotAnObject)
    ));
    assert!(matches!(
        Message::parse(r#"{"timestamp":"t"}"#),
        Err(ParseError::MissingType)
    ));
    assert!(matches!(
        Message::parse(r#"{"type":5}"#),
        Err(ParseError::MissingType)
    ));
}

#[test]
fn known_type_missing_channel_names_type_and_field() {
    let json = r#"{"type":"StasisEnd","timestamp":"t","application":"probe"}"#;
    let err = Message::parse(json).unwrap_err();
    match &err {
        ParseError::MissingField { kind, field } => {
            assert_eq!(kind, "StasisEnd");
            assert_eq!(*field, "channel");
        }
        other => panic!("wrong error: {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("StasisEnd") && text.contains("`channel`"),
        "{text}"
    );
}

#[test]
fn known_type_missing_other_required_fields() {
    let err = Message::parse(&event("ChannelDestroyed", r#""cause":16,"#)).unwrap_err();
    assert!(matches!(
        err,
        ParseError::MissingField { ref kind, field: "cause_txt" } if kind == "ChannelDestroyed"
    ));
    let json = event("ChannelDtmfReceived", r#""digit":"1","#);
    assert!(matches!(
        Message::parse(&json),
        Err(ParseError::MissingField {
            field: "duration_ms",
            ..
        })
    ));
    // Channel without its id.
    let json = event("StasisEnd", "").replacen(r#""id":"1795334591.22","#, "", 1);
    let err = Message::parse(&json).unwrap_err();
    assert!(
        matches!(err, ParseError::MissingField { field: "id", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("StasisEnd"), "{err}");
}

#[test]
fn wrong_field_type_names_the_path() {
    let json = event("StasisEnd", "").replace(r#""priority":1"#, r#""priority":"one""#);
    let err = Message::parse(&json).unwrap_err();
    match &err {
        ParseError::InvalidField { kind, path, .. } => {
            assert_eq!(kind, "StasisEnd");
            assert_eq!(path, "channel.dialplan.priority");
        }
        other => panic!("wrong error: {other:?}"),
    }
}

fn external_media(vars: &str) -> String {
    CHANNEL.replacen(
        r#""language":"en""#,
        &format!(r#""language":"en","channelvars":{vars}"#),
        1,
    )
}

#[test]
fn external_media_rtp_port_as_string() {
    let em = ExternalMediaChannel::parse(&external_media(
        r#"{"UNICASTRTP_LOCAL_ADDRESS":"127.0.0.1","UNICASTRTP_LOCAL_PORT":"40000"}"#,
    ))
    .unwrap();
    assert_eq!(em.channel.id, "1795334591.22");
    assert_eq!(
        em.unicast_rtp(),
        Some("127.0.0.1:40000".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(em.audiosocket_uuid(), None);
    assert_eq!(em.websocket_connection_id(), None);
    assert_eq!(em.optimal_frame_size(), None);
}

#[test]
fn external_media_rtp_port_as_number_and_ipv6() {
    let em = ExternalMediaChannel::parse(&external_media(
        r#"{"UNICASTRTP_LOCAL_ADDRESS":"::1","UNICASTRTP_LOCAL_PORT":40002,"X":null,"B":true}"#,
    ))
    .unwrap();
    assert_eq!(
        em.unicast_rtp(),
        Some("[::1]:40002".parse::<SocketAddr>().unwrap())
    );
    let vars = em.channel.channelvars.as_ref().unwrap();
    assert_eq!(
        vars.get("UNICASTRTP_LOCAL_PORT").map(String::as_str),
        Some("40002")
    );
    assert_eq!(vars.get("B").map(String::as_str), Some("true"));
    assert!(!vars.contains_key("X"));
}

#[test]
fn external_media_rtp_incomplete_or_bad() {
    for vars in [
        r#"{"UNICASTRTP_LOCAL_ADDRESS":"127.0.0.1"}"#,
        r#"{"UNICASTRTP_LOCAL_PORT":"40000"}"#,
        r#"{"UNICASTRTP_LOCAL_ADDRESS":"127.0.0.1","UNICASTRTP_LOCAL_PORT":"70000"}"#,
        r#"{"UNICASTRTP_LOCAL_ADDRESS":"","UNICASTRTP_LOCAL_PORT":"40000"}"#,
    ] {
        let em = ExternalMediaChannel::parse(&external_media(vars)).unwrap();
        assert_eq!(em.unicast_rtp(), None, "{vars}");
    }
    let em = ExternalMediaChannel::parse(CHANNEL).unwrap();
    assert_eq!(em.unicast_rtp(), None);
}

#[test]
fn external_media_audiosocket_and_websocket() {
    let em = ExternalMediaChannel::parse(&external_media(
        r#"{"AUDIOSOCKET_UUID":"1f0c8b2e-5a3d-4e6f-9a1b-2c3d4e5f6a7b","AUDIOSOCKET_SERVICE":"127.0.0.1:9092"}"#,
    ))
    .unwrap();
    assert_eq!(
        em.audiosocket_uuid().map(|u| u.to_string()).as_deref(),
        Some("1f0c8b2e-5a3d-4e6f-9a1b-2c3d4e5f6a7b")
    );
    let em = ExternalMediaChannel::parse(&external_media(
        r#"{"MEDIA_WEBSOCKET_CONNECTION_ID":"a1b2c3","MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE":160}"#,
    ))
    .unwrap();
    assert_eq!(em.websocket_connection_id(), Some("a1b2c3"));
    assert_eq!(em.optimal_frame_size(), Some(160));
    let em = ExternalMediaChannel::parse(&external_media(
        r#"{"MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE":"320"}"#,
    ))
    .unwrap();
    assert_eq!(em.optimal_frame_size(), Some(320));
}

#[test]
fn external_media_errors() {
    assert!(matches!(
        ExternalMediaChannel::parse("not json"),
        Err(ParseError::Json(_))
    ));
    assert!(matches!(
        ExternalMediaChannel::parse(r#"{"name":"x","state":"Down"}"#),
        Err(ParseError::MissingField { field: "id", .. })
    ));
}
