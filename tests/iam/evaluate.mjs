// The independent IAM evaluator of labctl's tests: @cloud-copilot/iam-simulate decides requests against policies.
// stdin: {"policies": [{"name", "policy"}], "requests": [{"action", "resource", "principal", "context"}]}
// stdout: one {"result", "errors"?} per request, in order ("Allowed", "ExplicitlyDenied", "ImplicitlyDenied").
import { runSimulation } from '@cloud-copilot/iam-simulate'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'))
const out = []
for (const req of input.requests) {
  const account = req.resource.split(':')[4] || '123456789012'
  const response = await runSimulation({
    identityPolicies: input.policies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    request: {
      action: req.action,
      principal: req.principal,
      resource: { resource: req.resource, accountId: account },
      contextVariables: req.context || {},
    },
  }, {})
  if (response.resultType === 'error') {
    out.push({ result: 'error', errors: response.errors })
  } else {
    out.push({ result: response.overallResult })
  }
}
process.stdout.write(JSON.stringify(out))
