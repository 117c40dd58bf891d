//! Two kvkeep instances on one store, end to end (issue 11): the real `kvkeep` binary backs up
//! the Key Vault emulator into Azurite over HTTPS under two configurations that differ only in
//! `[daemon] instance` (and their own index and identity, as on two hosts). While instance
//! host-a's backup is held slow by the emulator, host-b's `kvkeep backup` is refused, naming
//! host-a, and exits 1. Once the lease is broken, host-b backs the vault up, and host-a, whose
//! next renew finds its lease lost, stops without writing a manifest: the store holds host-b's
//! restore point only, and it verifies deep.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use kvkeep::config::Config;
use kvkeep::model::VaultName;
use kvkeep::store::open_store;
use kvkeep_emulator::api::Collection;
use kvkeep_emulator::server::{Emulator, FaultKind, FaultSpec};
use kvkeep_emulator::vault::VaultSettings;
use support::azurite::Azurite;
use support::config_files::{resolve_entry, vault_section, KvkeepToml};
use support::e2e::{
    azurite_with_container, emulator_beside, json_out, run_kvkeep, sas_store_section, seed,
    wait_for_backup_calls_past,
};
use tempfile::TempDir;

const CONTAINER: &str = "backups";
const TOKEN: &str = "lease-e2e-token";
const VAULT: &str = "kv-lease";
/// Longer than the 20 s between renewals: host-a's objects are still in flight when its first
/// renew after the break finds the lease lost, so it must stop before its manifest.
const HOLD_MS: u64 = 30_000;

/// One instance's configuration, in its own directory (index, identity, token, SAS file).
fn write_instance(dir: &Path, instance: &str, azurite: &Azurite, emulator: &Emulator) -> PathBuf {
    let store = sas_store_section(dir, azurite, CONTAINER, "shared/");
    let url = emulator.vault_url(VAULT).expect("vault url");
    KvkeepToml {
        store: &store,
        ca: azurite.ca_cert_path(),
        resolve: &[resolve_entry(url)],
        concurrency: 4,
        rest: &format!(
            "[daemon]\ninstance = \"{instance}\"\n\n{}",
            vault_section(VAULT, url, "westeurope")
        ),
    }
    .write(dir, TOKEN)
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn a_vault_held_by_one_instance_is_refused_to_another_until_its_lease_is_broken() {
    let azurite = azurite_with_container(CONTAINER).await;
    let emulator = emulator_beside(&azurite, vec![VaultSettings::named(VAULT)]).await;
    seed(&emulator, VAULT, Collection::Secrets, "app", 3, 1).await;
    let (dir_a, dir_b) = (
        TempDir::new().expect("tempdir"),
        TempDir::new().expect("tempdir"),
    );
    let config_a = write_instance(dir_a.path(), "host-a", &azurite, &emulator);
    let config_b = write_instance(dir_b.path(), "host-b", &azurite, &emulator);

    // host-a's backup takes the lease, then waits on the emulator.
    emulator
        .control()
        .add_fault(&FaultSpec {
            vault: Some(VAULT.into()),
            op: Some("secrets.backup".into()),
            kind: FaultKind::Latency,
            count: None,
            rate: None,
            retry_after_seconds: None,
            retry_after_ms: None,
            latency_ms: Some(HOLD_MS),
            page_size: None,
            next_link_host: None,
        })
        .await
        .expect("add fault");
    let a = {
        let config_a = config_a.clone();
        tokio::spawn(
            async move { run_kvkeep(&config_a, &["backup", "--output", "json"], &[]).await },
        )
    };
    wait_for_backup_calls_past(&emulator, VAULT, 0).await;

    // host-b is refused, told who holds the vault, and exits 1 without recording a run.
    let refused = run_kvkeep(&config_b, &["backup", "--output", "json"], &[]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let report = &json_out(&refused)["vaults"][0];
    assert_eq!(report["status"], "failed", "{}", text(&refused));
    assert_eq!(report["held_elsewhere"]["by"]["instance"], "host-a");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with(
            "backup of vault kv-lease not started: vault kv-lease is locked in azure container"
        ) && error.contains("by kvkeep instance host-a (pid ")
            && error.contains("try again when its run ends"),
        "{error}"
    );

    // The operator decides host-a is gone and breaks its lease (as `az storage blob lease
    // break` would); backups answer at once again.
    let config = Config::load(&config_b).expect("config");
    let store = open_store(&config.store, &config.azure)
        .await
        .expect("store");
    let vault: VaultName = VAULT.parse().expect("vault");
    store.break_lease(&vault).await.expect("break the lease");
    emulator
        .control()
        .clear_faults()
        .await
        .expect("clear faults");

    let taken = run_kvkeep(&config_b, &["backup", "--output", "json"], &[]).await;
    assert_eq!(taken.status.code(), Some(0), "{}", text(&taken));
    assert_eq!(json_out(&taken)["vaults"][0]["status"], "completed");

    // host-a's next renew found its lease lost: its run ends interrupted, without a manifest.
    let a = a.await.expect("host-a's backup");
    assert_eq!(a.status.code(), Some(1), "{}", text(&a));
    let report = &json_out(&a)["vaults"][0];
    assert_eq!(report["status"], "interrupted", "{}", text(&a));
    assert!(report["manifest"].is_null(), "{}", text(&a));
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("the lease on vault kv-lease in azure container")
            && error.contains("was lost")
            && error.contains("the run's manifest was not written"),
        "{error}"
    );

    // One restore point in the store, host-b's, and it verifies deep.
    let manifests = store.list("manifests/").await.expect("list manifests");
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    let identity = dir_b.path().join("identity.txt");
    let identity = identity.to_str().expect("utf-8 path");
    let verify = run_kvkeep(
        &config_b,
        &["verify", "--deep", "--identity", identity],
        &[],
    )
    .await;
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    // host-a's index holds its interrupted run and no restore point.
    let runs = kvkeep::index::Index::open(dir_a.path().join("index.sqlite"))
        .and_then(|index| index.list_runs(Some(&vault)))
        .expect("host-a's index");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, kvkeep::index::RunStatus::Interrupted);
    assert!(!runs[0].is_committed());

    // host-b found the lease broken, not released: it took the vault over and lists host-a's
    // run (named on the lock blob) as interrupted and left by host-a, beside its own.
    let listed = run_kvkeep(&config_b, &["list", "runs", "--output", "json"], &[]).await;
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed));
    let listed = json_out(&listed);
    let dead = runs[0].run.to_string();
    let left = listed
        .as_array()
        .and_then(|all| all.iter().find(|r| r["run"] == dead.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(left["status"], "interrupted", "{listed}");
    assert_eq!(left["abandoned_by"], "host-a", "{listed}");
    assert_eq!(left["committed"], false, "{listed}");
    let table = run_kvkeep(&config_b, &["list", "runs"], &[]).await;
    assert!(
        text(&table).contains("interrupted (left by host-a)"),
        "{}",
        text(&table)
    );
}
