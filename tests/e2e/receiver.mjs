// The e2e's webhook receiver: checks every Standard Webhooks signature with its own HMAC
// (not ppctl's code), answers 200 to a good one and 400 to a bad one; GET says what it
// got. Usage: node receiver.mjs PORT SECRET (scripts/e2e.sh starts it before consume).
import { createServer } from "node:http";
import { createHmac } from "node:crypto";

const [port, secret] = process.argv.slice(2);
const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
const got = { received: 0, verified: 0, bad: 0, ids: new Set() };

createServer((req, res) => {
  if (req.method === "GET") {
    res.end(JSON.stringify({ received: got.received, verified: got.verified, bad: got.bad, distinct: got.ids.size }));
    return;
  }
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString();
    const id = req.headers["webhook-id"], stamp = req.headers["webhook-timestamp"];
    const expected = "v1," + createHmac("sha256", key).update(`${id}.${stamp}.${body}`).digest("base64");
    const given = String(req.headers["webhook-signature"] || "").split(" ");
    got.received += 1;
    const good = given.includes(expected);
    if (good) { got.verified += 1; got.ids.add(id); } else got.bad += 1;
    res.writeHead(good ? 200 : 400);
    res.end();
  });
}).listen(Number(port), "127.0.0.1", () => console.log("listening " + port));
