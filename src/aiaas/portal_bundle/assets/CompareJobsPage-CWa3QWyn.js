import{u as E,o as L,r as n,b as T,c as q,j as e,P as y,h as v,L as I,E as x,k as $,n as C}from"./index-Ddii9dhW.js";import{M as D,L as O}from"./metricBuffer-EE-kN9xf.js";import"./uplot-Cf2ZdPUc.js";const Q=C(`
  query CompareTrainingJobs($slug: String!, $ids: [ID!]!) {
    project(slug: $slug) {
      id
      compareTrainingJobs(ids: $ids) {
        hyperparameterNames
        metricNames
        rows
        jobs {
          id
          modelName
          state
          createdAt
          metricKeys
        }
      }
    }
  }
`),R=C(`
  query JobCurve($id: ID!, $key: String!) {
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        metrics(key: $key, maxPoints: 1000) {
          step
          value
        }
      }
    }
  }
`);function B(){const c=E().slug??"",[b]=L(),d=n.useMemo(()=>b.getAll("job"),[b]),f=T(),[{data:m,error:h,fetching:N}]=q({query:Q,variables:{slug:c,ids:d},pause:d.length===0}),t=m?.project?.compareTrainingJobs,p=n.useMemo(()=>[...new Set((t?.jobs??[]).flatMap(s=>s.metricKeys))].sort(),[t]),[w,M]=n.useState(""),i=w||(p.includes("val_loss")?"val_loss":p[0]??""),l=n.useMemo(()=>new D,[]),[P,J]=n.useState(0),[S,_]=n.useState(null);if(n.useEffect(()=>{if(!t||!i)return;let s=!0;const o=t.jobs.map((r,a)=>({job:r,label:`#${a+1} ${r.modelName}`}));return Promise.all(o.map(async({job:r,label:a})=>{const j=await f.query(R,{id:r.id,key:i}).toPromise();if(j.error)throw j.error;const g=j.data?.node;return[a,g?.__typename==="TrainingJob"?g.metrics:[]]})).then(r=>{s&&(l.clear(),l.replay(Object.fromEntries(r)),J(a=>a+1))}).catch(r=>s&&_(r)),()=>{s=!1}},[t,i,f,l]),d.length===0)return e.jsxs("section",{children:[e.jsx(y,{slug:c}),e.jsx("h1",{children:"Compare training jobs"}),e.jsxs("p",{children:["Choose jobs to compare in the ",e.jsx(v,{to:`/projects/${c}/jobs`,children:"list of training jobs"}),"."]})]});if(N&&!m)return e.jsx(I,{what:"the comparison"});if(!m&&h)return e.jsx(x,{error:h});if(!t)return e.jsx(x,{error:h??{code:"NOT_FOUND",message:"no such project"}});const k=t.rows,u=(s,o,r)=>{const a=k[s]?.[o];return typeof a=="object"&&a!==null?a[r]:void 0};return e.jsxs("section",{children:[e.jsx(y,{slug:c}),e.jsx("h1",{children:"Compare training jobs"}),e.jsx(x,{error:S}),e.jsx("div",{className:"table-wrap",tabIndex:0,children:e.jsxs("table",{children:[e.jsx("thead",{children:e.jsxs("tr",{children:[e.jsx("th",{scope:"col",children:"Job"}),t.jobs.map((s,o)=>e.jsxs("th",{scope:"col",children:[e.jsxs(v,{to:`/projects/${c}/jobs/${encodeURIComponent(s.id)}`,children:["#",o+1," ",s.modelName]})," ",e.jsx("span",{className:"muted",children:s.state.toLowerCase()})]},s.id))]})}),e.jsxs("tbody",{children:[t.hyperparameterNames.map(s=>e.jsxs("tr",{children:[e.jsx("th",{scope:"row",children:s}),t.jobs.map((o,r)=>e.jsx("td",{children:$(u(r,"hyperparameters",s))},o.id))]},`h-${s}`)),t.metricNames.filter(s=>t.jobs.some((o,r)=>typeof u(r,"finalMetrics",s)!="object")).map(s=>e.jsxs("tr",{children:[e.jsx("th",{scope:"row",children:e.jsx("strong",{children:s})}),t.jobs.map((o,r)=>e.jsx("td",{className:"num",children:$(u(r,"finalMetrics",s))},o.id))]},`m-${s}`))]})]})}),e.jsx("h2",{children:"Curves"}),e.jsxs("label",{children:["Metric",e.jsx("select",{value:i,onChange:s=>M(s.target.value),children:p.map(s=>e.jsx("option",{children:s},s))})]}),e.jsx(O,{buffer:l,revision:P,singleScale:i,caption:`${i} of each job, by step.`})]})}export{B as default};
