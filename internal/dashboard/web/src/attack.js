// MITRE ATT&CK names for the ids detections carry. Tactics are the
// Enterprise matrix in kill-chain order; techniques are those the built-in
// rules and common Sigma rules use. When the server offers
// GET /api/v1/attack/coverage its names are merged in (loadAttackNames).
import { api } from "./api.js";

export const TACTICS = [
  ["TA0043", "Reconnaissance"], ["TA0042", "Resource Development"], ["TA0001", "Initial Access"],
  ["TA0002", "Execution"], ["TA0003", "Persistence"], ["TA0004", "Privilege Escalation"],
  ["TA0005", "Defense Evasion"], ["TA0006", "Credential Access"], ["TA0007", "Discovery"],
  ["TA0008", "Lateral Movement"], ["TA0009", "Collection"], ["TA0011", "Command and Control"],
  ["TA0010", "Exfiltration"], ["TA0040", "Impact"],
];

const names = new Map([
  ...TACTICS,
  ["T1003", "OS Credential Dumping"], ["T1021", "Remote Services"], ["T1027", "Obfuscated Files or Information"],
  ["T1040", "Network Sniffing"], ["T1046", "Network Service Discovery"], ["T1048", "Exfiltration Over Alternative Protocol"],
  ["T1059", "Command and Scripting Interpreter"], ["T1068", "Exploitation for Privilege Escalation"],
  ["T1070", "Indicator Removal"], ["T1078", "Valid Accounts"], ["T1087", "Account Discovery"],
  ["T1098", "Account Manipulation"], ["T1105", "Ingress Tool Transfer"], ["T1110", "Brute Force"],
  ["T1110.001", "Brute Force: Password Guessing"], ["T1110.002", "Brute Force: Password Cracking"],
  ["T1110.003", "Brute Force: Password Spraying"], ["T1110.004", "Brute Force: Credential Stuffing"],
  ["T1133", "External Remote Services"], ["T1136", "Create Account"], ["T1190", "Exploit Public-Facing Application"],
  ["T1203", "Exploitation for Client Execution"], ["T1213", "Data from Information Repositories"],
  ["T1485", "Data Destruction"], ["T1486", "Data Encrypted for Impact"], ["T1498", "Network Denial of Service"],
  ["T1499", "Endpoint Denial of Service"], ["T1530", "Data from Cloud Storage"], ["T1548", "Abuse Elevation Control Mechanism"],
  ["T1552", "Unsecured Credentials"], ["T1556", "Modify Authentication Process"], ["T1566", "Phishing"],
  ["T1567", "Exfiltration Over Web Service"], ["T1600", "Weaken Encryption"], ["T1621", "Multi-Factor Authentication Request Generation"],
]);

export function attackName(id) {
  return names.get(id) || names.get((id || "").split(".")[0]) || "";
}

export function withName(id) {
  const n = attackName(id);
  return n ? `${id} ${n}` : id;
}

// loadAttackNames merges the server's name table when it has one; a 404
// (older server) keeps the built-in table.
export async function loadAttackNames() {
  try {
    const cov = await api("GET", "/api/v1/attack/coverage");
    const add = (id, name) => { if (id && name && !names.has(id)) names.set(id, name); };
    for (const t of cov.tactics || []) add(t.id, t.name);
    for (const t of cov.techniques || []) add(t.technique_id || t.id, t.name);
  } catch {
    // not offered by this server: the built-in names stand
  }
}
