//! The service API: enrollment groups and individual enrollments (CRUD, ETags, paging, bulk, queries).

use super::*;

#[tokio::test]
async fn enrollment_group_lifecycle_etags_and_paging() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let chain = TestChain::new("Lifecycle");
    let pem = chain.intermediate.cert.pem.clone();

    // Create: 200 (never 201), info computed, certificate never returned.
    let (s, h, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[],
        Some(x509_group("line-1", &pem)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(h["content-type"], "application/json; charset=utf-8");
    let created = j(&body);
    assert!(!body.contains("BEGIN CERTIFICATE"), "{body}");
    let info = &created["attestation"]["x509"]["signingCertificates"]["primary"]["info"];
    assert_eq!(info["subjectName"], "CN=Lifecycle Intermediate CA");
    assert_eq!(info["version"], 3);
    assert_eq!(info["sha256Thumbprint"].as_str().unwrap().len(), 64);
    let etag1 = created["etag"].as_str().unwrap().to_string();

    // Create again without If-Match: 409 409202.
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[],
        Some(x509_group("line-1", &pem)),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(j(&body)["errorCode"], 409202);

    // PUT-back of the returned record (info only, no certificate) with If-Match: keeps the certificate.
    let mut back = created.clone();
    back["provisioningStatus"] = json!("disabled");
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[("if-match", &etag1)],
        Some(back.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let updated = j(&body);
    let etag2 = updated["etag"].as_str().unwrap().to_string();
    assert_ne!(etag1, etag2);
    assert_eq!(updated["provisioningStatus"], "disabled");
    assert_eq!(updated["createdDateTimeUtc"], created["createdDateTimeUtc"]);
    assert_eq!(
        updated["attestation"]["x509"]["signingCertificates"]["primary"]["info"],
        *info
    );

    // Stale etag: 412. Quoted etag (C# v1 style) and `*`: accepted.
    let (s, _, _) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[("if-match", &etag1)],
        Some(back.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let quoted = format!("\"{etag2}\"");
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[("if-match", &quoted)],
        Some(back.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _, _) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[("if-match", "*")],
        Some(back.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // GET (case-insensitive collection, percent-encoded id) and 404 404204.
    let (s, _, body) = call(&emu, &c, Method::GET, "/enrollmentgroups/LINE-1", &[], None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(j(&body)["enrollmentGroupId"], "line-1");
    let (s, _, body) = call(
        &emu,
        &c,
        Method::GET,
        "/enrollmentGroups/missing",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(j(&body)["errorCode"], 404204);
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/a%3Ab",
        &[],
        Some(x509_group("a:b", &pem)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // attestationmechanism (lower-case g, as Node sends it).
    let (s, _, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollmentgroups/line-1/attestationmechanism",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(j(&body)["type"], "x509");

    // Symmetric-key group: keys generated and returned.
    let sym = json!({"enrollmentGroupId":"sym","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":null,"secondaryKey":null}}});
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/sym",
        &[],
        Some(sym.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        j(&body)["attestation"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap()
            .len(),
        88
    );

    // Paging: 3 more groups, 6 in all, page size 4 → 4 + 2, no continuation on the last page.
    for i in 0..3 {
        let id = format!("page-{i}");
        let (s, _, _) = call(
            &emu,
            &c,
            Method::PUT,
            &format!("/enrollmentGroups/{id}"),
            &[],
            Some(x509_group(&id, &pem)),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut hdrs = vec![("x-ms-max-item-count", "4".to_string())];
        if let Some(t) = &token {
            hdrs.push(("x-ms-continuation", t.clone()));
        }
        let hdrs: Vec<(&str, &str)> = hdrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, h, body) = call(
            &emu,
            &c,
            Method::POST,
            "/enrollmentGroups/query",
            &hdrs,
            Some(r#"{"query":"*"}"#.into()),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(h["x-ms-item-type"], "EnrollmentGroup");
        let items = j(&body);
        for g in items.as_array().unwrap() {
            seen.push(g["enrollmentGroupId"].as_str().unwrap().to_string());
        }
        assert!(!body.contains("BEGIN CERTIFICATE"));
        pages += 1;
        match h.get("x-ms-continuation") {
            Some(t) => {
                assert!(!t.is_empty());
                token = Some(t.to_str().unwrap().to_string());
            }
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), 6, "{seen:?}");

    // DELETE: stale etag 412, then 204 with no body and no Content-Type, then 404.
    let (s, _, _) = call(
        &emu,
        &c,
        Method::DELETE,
        "/enrollmentGroups/line-1",
        &[("if-match", &etag1)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let (s, h, body) = call(
        &emu,
        &c,
        Method::DELETE,
        "/enrollmentGroups/line-1",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(body.is_empty());
    assert!(h.get("content-type").is_none());
    let (s, _, _) = call(
        &emu,
        &c,
        Method::DELETE,
        "/enrollmentGroups/line-1",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_if_match_updates_lose_nothing() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let sym = json!({"enrollmentGroupId":"race","attestation":{"type":"symmetricKey"}});
    let (_, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/race",
        &[],
        Some(sym.to_string()),
    )
    .await;
    let rec = j(&body);
    let etag = rec["etag"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (emu_url, sas, c, etag) = (
            emu.url(&format!("/enrollmentGroups/race?{SERVICE_API}")),
            emu.sas(),
            c.clone(),
            etag.clone(),
        );
        let mut r = rec.clone();
        r["initialTwin"] = json!({"tags": {"writer": i}});
        tasks.push(tokio::spawn(async move {
            c.put(emu_url)
                .header("authorization", sas)
                .header("if-match", etag)
                .header("content-type", "application/json")
                .body(r.to_string())
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::PRECONDITION_FAILED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1, "exactly one writer may win an If-Match race");
}

#[tokio::test]
async fn bulk_operations_and_individual_enrollment_queries() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let sk = |id: &str| json!({"registrationId": id, "attestation": {"type": "symmetricKey"}});
    let bulk = json!({"mode": "create", "enrollments": [sk("bulk-1"), sk("bulk-2")]});
    let (s, _, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments",
        &[],
        Some(bulk.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(j(&body)["isSuccessful"], true, "{body}");
    // Creating again reports a per-item 409201, still HTTP 200.
    let (s, _, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments",
        &[],
        Some(bulk.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v = j(&body);
    assert_eq!(v["isSuccessful"], false);
    assert_eq!(v["errors"][0]["errorCode"], 409201, "{body}");
    assert_eq!(v["errors"][0]["registrationId"], "bulk-1");
    // More than 10 items is refused.
    let many: Vec<Value> = (0..11).map(|i| sk(&format!("m-{i}"))).collect();
    let (s, _, _) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments",
        &[],
        Some(json!({"mode":"create","enrollments": many}).to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Query of individual enrollments: item type Enrollment, keys returned.
    let (s, h, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments/query",
        &[],
        Some(r#"{"query":"SELECT *"}"#.into()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-ms-item-type"], "Enrollment");
    let items = j(&body);
    assert_eq!(items.as_array().unwrap().len(), 2);
    assert!(items[0]["attestation"]["symmetricKey"]["primaryKey"].is_string());
    assert!(h.get("x-ms-continuation").is_none());
    // Bulk delete.
    let del = json!({"mode": "delete", "enrollments": [sk("bulk-1"), sk("bulk-2")]});
    let (_, _, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments",
        &[],
        Some(del.to_string()),
    )
    .await;
    assert_eq!(j(&body)["isSuccessful"], true, "{body}");
    let (_, _, body) = call(&emu, &c, Method::POST, "/enrollments/query", &[], None).await;
    assert_eq!(body, "[]");
}
