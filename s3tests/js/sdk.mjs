// The AWS SDK for JavaScript v3 against an mkv gateway: its default
// flexible checksums (CRC32 in a header, or in an aws-chunked trailer for
// streams), lib-storage's multipart Upload, presigned URLs with fetch,
// tagging and GetObjectAttributes. Usage: node sdk.mjs ENDPOINT ACCESS SECRET
// BUCKET. Prints one line per step; exits 1 at the first failure.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { Readable } from "node:stream";
import {
  S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command,
  DeleteObjectsCommand, CopyObjectCommand, DeleteBucketCommand, GetObjectAttributesCommand, PutObjectTaggingCommand,
  GetObjectTaggingCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

const [endpoint, accessKeyId, secretAccessKey, Bucket] = process.argv.slice(2);
const s3 = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 });
const bytes = async (r) => Buffer.from(await r.Body.transformToByteArray());

async function step(name, f) {
  try {
    await f();
    console.log(`ok   ${name}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.name} ${e.$metadata?.httpStatusCode ?? ""} ${e.message}`);
    process.exit(1);
  }
}

const body = crypto.randomBytes(100_000);
const big = crypto.randomBytes(12 * 1024 * 1024);

await step("CreateBucket", () => s3.send(new CreateBucketCommand({ Bucket })));
await step("PutObject, default CRC32", async () => {
  const r = await s3.send(new PutObjectCommand({ Bucket, Key: "a/one", Body: body, ContentType: "text/plain", Metadata: { x: "y" } }));
  assert.equal(r.ETag, `"${crypto.createHash("md5").update(body).digest("hex")}"`);
  assert.ok(r.ChecksumCRC32);
});
await step("PutObject of a stream (aws-chunked, checksum trailer)", async () => {
  const r = await s3.send(new PutObjectCommand({ Bucket, Key: "a/stream", Body: Readable.from([body.subarray(0, 50_000), body.subarray(50_000)]), ContentLength: body.length }));
  assert.equal(r.ETag, `"${crypto.createHash("md5").update(body).digest("hex")}"`);
});
for (const algorithm of ["SHA256", "CRC64NVME", "CRC32C", "SHA1"]) {
  await step(`PutObject ${algorithm}`, async () => {
    const r = await s3.send(new PutObjectCommand({ Bucket, Key: `a/${algorithm}`, Body: body, ChecksumAlgorithm: algorithm }));
    const g = await s3.send(new GetObjectCommand({ Bucket, Key: `a/${algorithm}`, ChecksumMode: "ENABLED" }));
    assert.ok((await bytes(g)).equals(body));
    assert.equal(g[`Checksum${algorithm}`], r[`Checksum${algorithm}`]);
  });
}
await step("GetObject, checksum validated by the SDK", async () => {
  const r = await s3.send(new GetObjectCommand({ Bucket, Key: "a/one", ChecksumMode: "ENABLED" }));
  assert.ok((await bytes(r)).equals(body));
  assert.equal(r.ContentType, "text/plain");
  assert.deepEqual(r.Metadata, { x: "y" });
});
await step("GetObject range", async () => {
  const r = await s3.send(new GetObjectCommand({ Bucket, Key: "a/one", Range: "bytes=10-19" }));
  assert.ok((await bytes(r)).equals(body.subarray(10, 20)));
  assert.equal(r.ContentRange, `bytes 10-19/${body.length}`);
});
await step("HeadObject", async () => {
  const r = await s3.send(new HeadObjectCommand({ Bucket, Key: "a/stream" }));
  assert.equal(r.ContentLength, body.length);
});
await step("lib-storage Upload (multipart, 3 parts)", async () => {
  const up = new Upload({ client: s3, params: { Bucket, Key: "big", Body: Readable.from([big]) }, partSize: 5 * 1024 * 1024, queueSize: 2 });
  const r = await up.done();
  assert.match(r.ETag, /-3"$/);
  const g = await s3.send(new GetObjectCommand({ Bucket, Key: "big", ChecksumMode: "ENABLED" }));
  assert.ok((await bytes(g)).equals(big));
});
await step("GetObjectAttributes", async () => {
  const r = await s3.send(new GetObjectAttributesCommand({ Bucket, Key: "big", ObjectAttributes: ["ETag", "ObjectParts", "ObjectSize"] }));
  assert.equal(r.ObjectSize, big.length);
  assert.equal(r.ObjectParts.TotalPartsCount, 3);
});
await step("CopyObject", async () => {
  await s3.send(new CopyObjectCommand({ Bucket, Key: "a/copy", CopySource: `${Bucket}/a/one` }));
  assert.ok((await bytes(await s3.send(new GetObjectCommand({ Bucket, Key: "a/copy" })))).equals(body));
});
await step("Put/GetObjectTagging", async () => {
  await s3.send(new PutObjectTaggingCommand({ Bucket, Key: "a/one", Tagging: { TagSet: [{ Key: "k", Value: "v" }] } }));
  const r = await s3.send(new GetObjectTaggingCommand({ Bucket, Key: "a/one" }));
  assert.deepEqual(r.TagSet, [{ Key: "k", Value: "v" }]);
});
await step("ListObjectsV2 with a delimiter", async () => {
  const r = await s3.send(new ListObjectsV2Command({ Bucket, Delimiter: "/" }));
  assert.deepEqual(r.Contents.map((o) => o.Key), ["big"]);
  assert.deepEqual(r.CommonPrefixes.map((p) => p.Prefix), ["a/"]);
});
await step("presigned GET and PUT with fetch", async () => {
  const get = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: "a/one" }), { expiresIn: 60 });
  const r = await fetch(get);
  assert.equal(r.status, 200);
  assert.ok(Buffer.from(await r.arrayBuffer()).equals(body));
  const put = await getSignedUrl(s3, new PutObjectCommand({ Bucket, Key: "a/presigned" }), { expiresIn: 60 });
  assert.equal((await fetch(put, { method: "PUT", body: "hello" })).status, 200);
  assert.equal((await bytes(await s3.send(new GetObjectCommand({ Bucket, Key: "a/presigned" })))).toString(), "hello");
});
await step("DeleteObjects, DeleteBucket", async () => {
  const keys = (await s3.send(new ListObjectsV2Command({ Bucket }))).Contents.map((o) => ({ Key: o.Key }));
  const r = await s3.send(new DeleteObjectsCommand({ Bucket, Delete: { Objects: keys } }));
  assert.equal(r.Deleted.length, keys.length);
  assert.equal(r.Errors, undefined);
  await s3.send(new DeleteBucketCommand({ Bucket }));
});
