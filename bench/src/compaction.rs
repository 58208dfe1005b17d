//! Direct downloads on PostgreSQL + S3: each upload shape saved with
//! `storage.direct_download` on, whether its lookup hands out the bucket's own
//! URL right after the save (zero-hop) and once compaction has rewritten it as
//! one object, how long that took, and a GET of it from the bucket next to
//! object_store getting the same bytes from the same server.

use super::*;

/// How long a save may wait for its compaction.
const COMPACTION_WAIT: Duration = Duration::from_secs(600);

pub async fn run(args: &Args, size_gib: u64) -> Result<()> {
    let size = size_gib * GIB;
    let file = random_file(args, size_gib)?;
    let deployment = Deployment::new(Backend::PgS3);
    let endpoint = deployment.s3.as_ref().context("an S3 server")?.endpoint();
    let reference = Reference::for_deployment(&deployment)?;
    println!(
        "\n## {size_gib} GiB, {}, direct downloads and compaction\n",
        backend_name(Backend::PgS3)
    );
    println!("| shape | save MB/s | zero-hop right after the save | one object after | GET from the bucket MB/s | object_store get MB/s | GET / ref |");
    println!("|---|---|---|---|---|---|---|");
    let (server, data) = start_server(
        args,
        &deployment,
        "compaction-data",
        &[("HOARD_STORAGE_DIRECT_DOWNLOAD", "true")],
    )?;
    let pid = server.pid().context("pid")?;
    let http = reqwest::Client::new();
    reference.put(&file, &args.work).await?;
    for (i, shape) in [Shape::PutBlob, Shape::Blocks64x8, Shape::Blocks1Seq]
        .into_iter()
        .enumerate()
    {
        let key = format!("direct-{size_gib}g-{i}");
        let saved = upload(&http, &server, &file, size, &key, shape).await?;
        let at_once = download_url(&http, &server, &key)
            .await?
            .starts_with(&endpoint);
        let t = Instant::now();
        let url = loop {
            let url = download_url(&http, &server, &key).await?;
            if url.starts_with(&endpoint) {
                break url;
            }
            if t.elapsed() > COMPACTION_WAIT {
                bail!("{key} was not compacted within {COMPACTION_WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let compacted = if at_once {
            "already one object".to_string()
        } else {
            let d = t.elapsed();
            format!("{:.1} s ({:.0} MB/s)", d.as_secs_f64(), mbps(size, d))
        };
        settle(true)?;
        let ref_get = mbps(size, reference.get(&file, size).await?);
        settle(true)?;
        let t = Instant::now();
        get_discarding(&http, &url, size).await?;
        let get = mbps(size, t.elapsed());
        println!(
            "| {} | {:.0} | {} | {compacted} | {get:.0} | {ref_get:.0} | {:.2}x |",
            shape.name(),
            mbps(size, saved),
            if at_once { "yes" } else { "no" },
            get / ref_get
        );
        twirp(&http, &server, "DeleteCacheEntry", json!({"key": key})).await?;
    }
    reference.clean().await?;
    println!(
        "\nserver peak RSS (VmHWM), compactions included: {:.1} MiB",
        vm_hwm_kib(pid)? as f64 / 1024.0
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
