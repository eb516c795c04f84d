// front.js — the tests' S3 server: s3rver (a real S3-protocol server that
// stores objects on disk) behind a front that checks every request's SigV4
// signature with the AWS SDK's own signer (@smithy/signature-v4), an
// implementation independent of libcurl's. s3rver alone accepts any secret
// (its source says signature verification is unimplemented), so without this
// front a client signing wrongly would pass every test.
//
//   node front.js --host H --port P --dir D [--bucket NAME]...
//
// Prints "s3: ready http://H:P" on stdout once both servers listen.
// Credentials: S3_ACCESS_KEY / S3_SECRET_KEY (default atelier / atelier-secret),
// region S3_REGION (default us-east-1). A request whose signature does not
// verify gets 403 SignatureDoesNotMatch (InvalidAccessKeyId for an unknown
// key) and never reaches s3rver; a signed payload hash (x-amz-content-sha256)
// must match the body (400 XAmzContentSHA256Mismatch), as on AWS.
//
// Test hooks, unsigned, under /__front/ (no bucket can be named that):
//   POST /__front/fault?status=503&count=K   the next K S3 requests get that status
//   POST /__front/fault?corrupt=K            the next K object GET bodies get a byte flipped
//   POST /__front/fault?stall=K&ms=M         the next K requests wait M ms before any answer
//   GET  /__front/stats                      counts: verified, rejected, faults, by method
//   POST /__front/reset                      clear faults and counts
'use strict';

const http = require('http');
const crypto = require('crypto');
const S3rver = require('s3rver');
const AWSAccount = require('s3rver/lib/models/account');
const { SignatureV4 } = require('@smithy/signature-v4');
const { Sha256 } = require('@aws-crypto/sha256-js');

function args(argv) {
	const o = { host: '127.0.0.1', port: 0, dir: null, buckets: [] };
	for (let i = 2; i < argv.length; i += 2) {
		const k = argv[i], v = argv[i + 1];
		if (k === '--host') o.host = v;
		else if (k === '--port') o.port = Number(v);
		else if (k === '--dir') o.dir = v;
		else if (k === '--bucket') o.buckets.push(v);
		else throw new Error('unknown argument ' + k);
	}
	if (!o.dir) throw new Error('--dir is required');
	if (!o.buckets.length) o.buckets.push('atelier');
	return o;
}

const opt = args(process.argv);
const KEY = process.env.S3_ACCESS_KEY || 'atelier';
const SECRET = process.env.S3_SECRET_KEY || 'atelier-secret';
const REGION = process.env.S3_REGION || 'us-east-1';
const MAX_BODY = 1 << 30;
const SKEW_MS = 15 * 60 * 1000;

const stats = { verified: 0, rejected: 0, faults: 0, corrupted: 0, methods: {}, presigned: 0 };
let fault = { status: 0, count: 0, corrupt: 0, stall: 0, ms: 0 };

function xmlError(res, status, code, message) {
	const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
	res.writeHead(status, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) });
	res.end(body);
}

// "20261203T153000Z" -> Date
function parseAmzDate(s) {
	const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(s || '');
	if (!m) return null;
	return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
}

// The raw query string as the signer's {key: value | [values]} (decoded:
// the signer encodes each part itself, as S3 does when it checks).
function queryObject(raw) {
	const q = {};
	if (!raw) return q;
	for (const part of raw.split('&')) {
		if (!part) continue;
		const eq = part.indexOf('=');
		const k = decodeURIComponent(eq < 0 ? part : part.slice(0, eq));
		const v = eq < 0 ? '' : decodeURIComponent(part.slice(eq + 1).replace(/\+/g, '%20'));
		if (k in q) q[k] = [].concat(q[k], v);
		else q[k] = v;
	}
	return q;
}

function signer(secret, sessionToken) {
	return new SignatureV4({
		credentials: { accessKeyId: KEY, secretAccessKey: secret, sessionToken },
		region: REGION, service: 's3', sha256: Sha256,
		uriEscapePath: false, // S3 signs the path as sent, encoded once
		applyChecksum: false, // the client's x-amz-content-sha256 is used when it signed one
	});
}

// Returns null when the request verifies, else [status, code, message].
async function verify(req, path, rawQuery, body) {
	const query = queryObject(rawQuery);
	if (query['X-Amz-Signature'] !== undefined) {
		// A presigned URL: the signer presigns the same request at the same
		// instant; the signatures must be equal. S3 signs the payload of a
		// presigned URL as UNSIGNED-PAYLOAD.
		stats.presigned++;
		const cred = (query['X-Amz-Credential'] || '').split('/');
		if (cred[0] !== KEY) return [403, 'InvalidAccessKeyId', 'unknown access key'];
		const date = parseAmzDate(query['X-Amz-Date']);
		const expires = Number(query['X-Amz-Expires']);
		if (!date || !(expires > 0)) return [403, 'AuthorizationQueryParametersError', 'bad X-Amz-Date or X-Amz-Expires'];
		if (Date.now() > date.getTime() + expires * 1000) return [403, 'AccessDenied', 'Request has expired'];
		const signed = new Set((query['X-Amz-SignedHeaders'] || '').split(';'));
		const rest = {};
		for (const [k, v] of Object.entries(query))
			if (!/^X-Amz-(Algorithm|Credential|Date|Expires|SignedHeaders|Signature|Security-Token)$/.test(k)) rest[k] = v;
		const headers = { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
		for (const h of signed) if (req.headers[h] !== undefined) headers[h] = String(req.headers[h]);
		const out = await signer(SECRET, query['X-Amz-Security-Token']).presign(
			{ method: req.method, protocol: 'http:', hostname: req.headers.host, path, query: rest, headers },
			{ signingDate: date, expiresIn: expires, signableHeaders: signed,
			  unsignableHeaders: new Set(['x-amz-content-sha256']), unhoistableHeaders: new Set(['x-amz-content-sha256']) });
		if (out.query['X-Amz-Signature'] !== query['X-Amz-Signature'])
			return [403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.'];
		return null;
	}
	const auth = req.headers.authorization || '';
	const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
	if (!m) return [403, 'AccessDenied', 'no or malformed AWS4-HMAC-SHA256 Authorization header'];
	if (m[1] !== KEY) return [403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.'];
	const date = parseAmzDate(req.headers['x-amz-date']);
	if (!date) return [403, 'AccessDenied', 'no x-amz-date'];
	if (Math.abs(Date.now() - date.getTime()) > SKEW_MS) return [403, 'RequestTimeTooSkewed', 'clock skew'];
	const sha = req.headers['x-amz-content-sha256'];
	if (!sha) return [400, 'InvalidRequest', 'Missing required header for this request: x-amz-content-sha256'];
	const signedList = m[4].split(';');
	if (!signedList.includes('host') || !signedList.includes('x-amz-content-sha256') || !signedList.includes('x-amz-date'))
		return [403, 'AccessDenied', 'host, x-amz-date and x-amz-content-sha256 must be signed'];
	const headers = {};
	for (const h of signedList) {
		if (req.headers[h] === undefined) return [403, 'AccessDenied', 'signed header ' + h + ' missing'];
		headers[h] = String(req.headers[h]);
	}
	const out = await signer(SECRET, req.headers['x-amz-security-token']).sign(
		{ method: req.method, protocol: 'http:', hostname: req.headers.host, path, query: queryObject(rawQuery), headers },
		{ signingDate: date, signableHeaders: new Set(signedList) });
	const got = /Signature=([0-9a-f]{64})/.exec(out.headers.authorization)[1];
	if (got !== m[5])
		return [403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.'];
	if (/^[0-9a-f]{64}$/.test(sha) && crypto.createHash('sha256').update(body).digest('hex') !== sha)
		return [400, 'XAmzContentSHA256Mismatch', 'The provided x-amz-content-sha256 header does not match what was computed.'];
	return null;
}

function control(req, res, path, rawQuery) {
	const q = queryObject(rawQuery);
	if (path === '/__front/stats') {
		res.writeHead(200, { 'Content-Type': 'application/json' });
		return res.end(JSON.stringify(stats));
	}
	if (path === '/__front/reset') {
		fault = { status: 0, count: 0, corrupt: 0, stall: 0, ms: 0 };
		for (const k of ['verified', 'rejected', 'faults', 'corrupted', 'presigned']) stats[k] = 0;
		stats.methods = {};
	} else if (path === '/__front/fault') {
		if (q.status) fault.status = Number(q.status), fault.count = Number(q.count || 1);
		if (q.corrupt) fault.corrupt = Number(q.corrupt);
		if (q.stall) fault.stall = Number(q.stall), fault.ms = Number(q.ms || 1000);
	} else {
		res.writeHead(404);
		return res.end();
	}
	res.writeHead(204);
	res.end();
}

async function main() {
	// s3rver checks that the access key exists (and nothing more for SigV4):
	// the front's key is made one of its dummy account's.
	AWSAccount.DUMMY_ACCOUNT.createKeyPair(KEY, SECRET);
	const backend = new S3rver({
		address: '127.0.0.1', port: 0, silent: true, directory: opt.dir,
		configureBuckets: opt.buckets.map((name) => ({ name })),
	});
	const inner = await backend.run();

	const server = http.createServer((req, res) => {
		const qi = req.url.indexOf('?');
		const path = qi < 0 ? req.url : req.url.slice(0, qi);
		const rawQuery = qi < 0 ? '' : req.url.slice(qi + 1);
		if (path.startsWith('/__front/')) return control(req, res, path, rawQuery);
		const chunks = [];
		let size = 0;
		req.on('data', (c) => {
			size += c.length;
			if (size > MAX_BODY) req.destroy();
			else chunks.push(c);
		});
		req.on('end', async () => {
			const body = Buffer.concat(chunks);
			stats.methods[req.method] = (stats.methods[req.method] || 0) + 1;
			let bad;
			try {
				bad = await verify(req, path, rawQuery, body);
			} catch (e) {
				bad = [403, 'SignatureDoesNotMatch', 'cannot verify: ' + e.message];
			}
			if (bad) {
				stats.rejected++;
				return xmlError(res, bad[0], bad[1], bad[2]);
			}
			stats.verified++;
			if (fault.stall > 0) {
				fault.stall--;
				stats.faults++;
				await new Promise((r) => setTimeout(r, fault.ms));
			}
			if (fault.count > 0) {
				fault.count--;
				stats.faults++;
				return xmlError(res, fault.status, fault.status === 503 ? 'SlowDown' : 'InternalError', 'injected by the test');
			}
			const headers = Object.assign({}, req.headers);
			delete headers['transfer-encoding'];
			headers['content-length'] = String(body.length);
			const up = http.request({ host: inner.address, port: inner.port, method: req.method, path: req.url, headers }, (ures) => {
				const corrupt = req.method === 'GET' && (ures.statusCode === 200 || ures.statusCode === 206) &&
					!rawQuery && fault.corrupt > 0;
				if (!corrupt) {
					res.writeHead(ures.statusCode, ures.headers);
					return ures.pipe(res);
				}
				fault.corrupt--;
				stats.corrupted++;
				const parts = [];
				ures.on('data', (c) => parts.push(c));
				ures.on('end', () => {
					const b = Buffer.concat(parts);
					if (b.length) b[b.length >> 1] ^= 0x01;
					res.writeHead(ures.statusCode, ures.headers);
					res.end(b);
				});
			});
			up.on('error', (e) => xmlError(res, 502, 'BadGateway', e.message));
			up.end(body);
		});
	});
	server.listen(opt.port, opt.host, () => {
		const a = server.address();
		const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
		process.stdout.write(`s3: ready http://${host}:${a.port}\n`);
	});
	const stop = () => server.close(() => backend.close().then(() => process.exit(0)));
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
}

main().catch((e) => {
	process.stderr.write('s3 front: ' + (e.stack || e) + '\n');
	process.exit(1);
});
